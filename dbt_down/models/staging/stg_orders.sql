with

source as (

    select * from {{ source('dbt_up', 'public_orders') }}

),

renamed as (

    select
        order_id,
        customer_id,
        order_date,
        status,
        amount as order_amount,
        payment_count,
        is_refunded

    from source

),

final as (

    select * from renamed

)

select * from final
