with

source as (

    select * from {{ ref('core', 'orders') }}

),

renamed as (

    select
        order_id,
        customer_id,
        order_date,
        amount as order_amount

    from source

    where status = 'completed'

)

select * from renamed
