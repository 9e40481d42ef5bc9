with

source as (

    select * from {{ ref('raw_orders') }}

),

renamed as (

    select
        id as order_id,
        customer_id,
        order_date,
        lower(trim(status)) as status

    from source

),

final as (

    select * from renamed

)

select * from final
